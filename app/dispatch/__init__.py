"""Business logic: entity graphs and run requests. Never commits; the caller's boundary does."""
