//! v2 TLVs: validated at decode time, then iterated infallibly with typed access.
