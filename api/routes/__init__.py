"""The consumer API's FastAPI routes, thin: each validates its request, calls :mod:`api.services`, and shapes the
answer. Their dependencies (the authenticated tenant) are in :mod:`.deps`."""
