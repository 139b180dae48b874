"""Load tests for the classification service, aimed only at 127.0.0.1.

Modules that import Locust (`locustfile`, `burst`, `locust_users`, `locust_grpc`,
`locust_hooks`) are loaded only by Locust processes, because Locust patches
sockets with gevent. Everything else (`targets`, `payloads`, `metrics_text`,
`locust_runner` and the `sweep` package) is safe to import anywhere.
"""
