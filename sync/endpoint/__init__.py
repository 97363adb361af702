"""The cloud endpoint: `core` (framework-free), `app` (Starlette, served by uvicorn) and
`lambda_handler` (Mangum for API Gateway HTTP API events, S3 events routed to the core)."""
