"""What the provisioner's route modules share (protocols and operator alike): the app's services and scheduler as
FastAPI dependencies, shared-secret callers (``deps``), and request bodies declared for the OpenAPI document
(``bodies``)."""
