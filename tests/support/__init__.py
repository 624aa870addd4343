"""Test support: helpers every test module imports from here (never from a conftest.py).

- ``wait``: the one way to wait for a condition (``wait_for``), polling with a deadline.
- ``examples``: the example assets and the compile target the template tests share.
- ``edc``: EDC HTTP provisioner requests as a connector sends them, and the provisioner's test clients.
"""
