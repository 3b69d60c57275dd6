"""Media for live sessions: the join page a browser opens, and (later) server-side media."""
