"""What a server needs per visitor: upload lifetimes per browser session, rate limits."""
