//! Decode and encode errors. `Invalid` names the rule and the field that failed, for logs.
