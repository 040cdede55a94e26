//! Fuzzes the agent-check reply parser (`health::agent`): a line from an untrusted agent
//! parses or is refused, never a panic; a parsed reply written out parses the same.
//! Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::agent_reply(data));
