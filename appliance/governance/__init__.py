"""Users, roles, tokens, the promotion gate, four-eyes approvals and the audit chain."""
