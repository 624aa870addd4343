"""Local development stack, EDC connector launcher and demo of Workflow Middle-Layer (not shipped in the image)."""
