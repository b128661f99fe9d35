"""Speaking other systems' formats."""
