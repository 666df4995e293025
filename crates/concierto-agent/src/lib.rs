//! concierto-agent (being written).
