//! concierto-scheduler (being written).
