"""What every layer of the consumer API shares: its exceptions, its request and response bodies, job and delivery
states, and Argo's objects as the API reads them. Imports nothing else of ``api``."""
