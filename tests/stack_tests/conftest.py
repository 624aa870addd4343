from devstack.stack.fixture import stack  # noqa: F401 - session fixture used by these tests
