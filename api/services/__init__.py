"""The consumer API's domain operations over its backends, for one tenant (:mod:`.tenant`): the asset catalogue,
staged inputs and listings, starting jobs, job views, logs, sealed outputs, receipts, the orphan sweeper and the
webhooks. No HTTP routes: what they raise is answered by :mod:`api.web.problems`."""
