"""Eclipse Data Plane Signaling (plain JSON; EDC >= 0.18): routes, wire shapes, registration and callbacks."""
