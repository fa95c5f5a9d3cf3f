"""Layer 3: where a call runs: request preparation, `ChatCall`, the tool loop, the conversation."""
