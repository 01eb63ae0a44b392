//! Plausible's Stats API v1 (`/api/v1/stats/*`): its parameters parsed onto our stats query, its answer shapes.
