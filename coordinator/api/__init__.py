"""gRPC edge of the coordinator: auth interceptor, thin servicers, wire conversions."""
