"""gRPC API: versioned proto stubs, the grpc.aio server, the typed client and conversions."""
