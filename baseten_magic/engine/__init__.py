"""Layer 3: where a call runs: `ChatCall`, the tool loop, the conversation, the `Session`."""
