//! concierto-orchestrator (being written).
