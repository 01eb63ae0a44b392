//! Plausible's Events API (`POST /api/event`): its payload parsed onto our beacon.
