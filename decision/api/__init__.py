"""The front ends: how callers reach the decision flow, kept apart from the stages of the flow itself.

``grpc_server`` (``DecisionApi``: proto -> domain -> flow -> proto, and the thin gRPC servicer over it),
``http_api`` (HTTP/JSON over the same ``DecisionApi``) with ``http_limits`` (its connection cap and read timeout)
and ``openapi`` (its document), ``wire_format`` (finds the field of an unreadable protobuf request) and ``teller``
(the branch teller's screen). The stages never import this package (an import-linter contract in pyproject.toml).
"""
