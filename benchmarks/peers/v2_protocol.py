"""The few messages of the Open Inference (V2) gRPC protocol a client needs to call ``ModelInfer``.

Built from a descriptor at import, with the protocol's own package, names and field numbers
(``inference.GRPCInferenceService``, as in MLServer's ``dataplane.proto`` and KServe's ``grpc_predict_v2.proto``),
so the project needs neither MLServer in its own venv nor generated code for a benchmark client. Fields a client
never sets or reads (the ``parameters`` maps) are left out: protobuf keeps them as unknown fields.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
MODEL_READY = f"/{SERVICE}/ModelReady"

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _field(
    name: str, number: int, kind: int, label: int = _OPTIONAL, type_name: str = ""
) -> descriptor_pb2.FieldDescriptorProto:
    return _F(name=name, number=number, type=kind, label=label, type_name=type_name or None)


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="nba_bench/v2_inference.proto", package=PACKAGE, syntax="proto3")
    contents = file.message_type.add(name="InferTensorContents")
    for name, number, kind in [
        ("bool_contents", 1, _F.TYPE_BOOL),
        ("int_contents", 2, _F.TYPE_INT32),
        ("int64_contents", 3, _F.TYPE_INT64),
        ("uint_contents", 4, _F.TYPE_UINT32),
        ("uint64_contents", 5, _F.TYPE_UINT64),
        ("fp32_contents", 6, _F.TYPE_FLOAT),
        ("fp64_contents", 7, _F.TYPE_DOUBLE),
        ("bytes_contents", 8, _F.TYPE_BYTES),
    ]:
        contents.field.append(_field(name, number, kind, _REPEATED))

    def tensor(parent: descriptor_pb2.DescriptorProto, name: str) -> None:
        nested = parent.nested_type.add(name=name)
        nested.field.extend(
            [
                _field("name", 1, _F.TYPE_STRING),
                _field("datatype", 2, _F.TYPE_STRING),
                _field("shape", 3, _F.TYPE_INT64, _REPEATED),
                _field("contents", 5, _F.TYPE_MESSAGE, type_name=f".{PACKAGE}.InferTensorContents"),
            ]
        )

    request = file.message_type.add(name="ModelInferRequest")
    tensor(request, "InferInputTensor")
    request.field.extend(
        [
            _field("model_name", 1, _F.TYPE_STRING),
            _field("model_version", 2, _F.TYPE_STRING),
            _field("id", 3, _F.TYPE_STRING),
            _field("inputs", 5, _F.TYPE_MESSAGE, _REPEATED, f".{PACKAGE}.ModelInferRequest.InferInputTensor"),
            _field("raw_input_contents", 7, _F.TYPE_BYTES, _REPEATED),
        ]
    )
    response = file.message_type.add(name="ModelInferResponse")
    tensor(response, "InferOutputTensor")
    response.field.extend(
        [
            _field("model_name", 1, _F.TYPE_STRING),
            _field("model_version", 2, _F.TYPE_STRING),
            _field("id", 3, _F.TYPE_STRING),
            _field("outputs", 5, _F.TYPE_MESSAGE, _REPEATED, f".{PACKAGE}.ModelInferResponse.InferOutputTensor"),
            _field("raw_output_contents", 6, _F.TYPE_BYTES, _REPEATED),
        ]
    )
    ready_request = file.message_type.add(name="ModelReadyRequest")
    ready_request.field.extend([_field("name", 1, _F.TYPE_STRING), _field("version", 2, _F.TYPE_STRING)])
    ready_response = file.message_type.add(name="ModelReadyResponse")
    ready_response.field.append(_field("ready", 1, _F.TYPE_BOOL))
    return file


# A pool of our own: the default pool may one day hold the real protocol under the same names.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _message(name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


ModelInferRequest = _message("ModelInferRequest")
ModelInferResponse = _message("ModelInferResponse")
ModelReadyRequest = _message("ModelReadyRequest")
ModelReadyResponse = _message("ModelReadyResponse")
