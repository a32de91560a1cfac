"""HTTP routers: parse, call app.dispatch, return."""
