//! The contract suite on the in-memory log.

use pulse_core::memory::MemoryLog;

pulse_core::event_log_contract!(async { (MemoryLog::new(), ()) });
