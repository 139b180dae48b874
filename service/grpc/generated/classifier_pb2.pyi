from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyParams(_message.Message):
    __slots__ = ("protocol", "taxonomy", "candidates", "top_k", "seed", "num_options", "max_new_tokens")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NUM_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    taxonomy: str
    candidates: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    seed: int
    num_options: int
    max_new_tokens: int
    def __init__(self, protocol: _Optional[str] = ..., taxonomy: _Optional[str] = ..., candidates: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., seed: _Optional[int] = ..., num_options: _Optional[int] = ..., max_new_tokens: _Optional[int] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("image", "params", "request_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    params: ClassifyParams
    request_id: str
    def __init__(self, image: _Optional[bytes] = ..., params: _Optional[_Union[ClassifyParams, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: ClassifyResult
    def __init__(self, result: _Optional[_Union[ClassifyResult, _Mapping]] = ...) -> None: ...

class ClassifyStreamRequest(_message.Message):
    __slots__ = ("request_id", "image", "params")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    image: bytes
    params: ClassifyParams
    def __init__(self, request_id: _Optional[str] = ..., image: _Optional[bytes] = ..., params: _Optional[_Union[ClassifyParams, _Mapping]] = ...) -> None: ...

class ClassifyStreamResponse(_message.Message):
    __slots__ = ("request_id", "result", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    result: ClassifyResult
    error: ItemError
    def __init__(self, request_id: _Optional[str] = ..., result: _Optional[_Union[ClassifyResult, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "field", "retry_after_s")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field: str
    retry_after_s: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., retry_after_s: _Optional[int] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("id", "index", "name", "score")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    id: str
    index: int
    name: str
    score: float
    def __init__(self, id: _Optional[str] = ..., index: _Optional[int] = ..., name: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "preprocess_ms", "generate_ms", "map_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATE_MS_FIELD_NUMBER: _ClassVar[int]
    MAP_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    preprocess_ms: float
    generate_ms: float
    map_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., generate_ms: _Optional[float] = ..., map_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class ObjectResult(_message.Message):
    __slots__ = ("answer", "labels", "method", "margin", "out_of_list")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_LIST_FIELD_NUMBER: _ClassVar[int]
    answer: str
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    method: str
    margin: float
    out_of_list: bool
    def __init__(self, answer: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., method: _Optional[str] = ..., margin: _Optional[float] = ..., out_of_list: _Optional[bool] = ...) -> None: ...

class ClassifyResult(_message.Message):
    __slots__ = ("request_id", "labels", "raw_answer", "method", "margin", "similarity", "out_of_list", "abstain", "ambiguous", "protocol", "prompt_id", "model", "taxonomy", "timings", "options", "first_answer", "objects", "generated_tokens", "prompt_tokens")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RAW_ANSWER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_LIST_FIELD_NUMBER: _ClassVar[int]
    ABSTAIN_FIELD_NUMBER: _ClassVar[int]
    AMBIGUOUS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    FIRST_ANSWER_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    raw_answer: str
    method: str
    margin: float
    similarity: float
    out_of_list: bool
    abstain: bool
    ambiguous: bool
    protocol: str
    prompt_id: str
    model: str
    taxonomy: str
    timings: StageTimings
    options: _containers.RepeatedCompositeFieldContainer[Label]
    first_answer: str
    objects: _containers.RepeatedCompositeFieldContainer[ObjectResult]
    generated_tokens: int
    prompt_tokens: int
    def __init__(self, request_id: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., raw_answer: _Optional[str] = ..., method: _Optional[str] = ..., margin: _Optional[float] = ..., similarity: _Optional[float] = ..., out_of_list: _Optional[bool] = ..., abstain: _Optional[bool] = ..., ambiguous: _Optional[bool] = ..., protocol: _Optional[str] = ..., prompt_id: _Optional[str] = ..., model: _Optional[str] = ..., taxonomy: _Optional[str] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., options: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., first_answer: _Optional[str] = ..., objects: _Optional[_Iterable[_Union[ObjectResult, _Mapping]]] = ..., generated_tokens: _Optional[int] = ..., prompt_tokens: _Optional[int] = ...) -> None: ...

class ListTaxonomiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaxonomyInfo(_message.Message):
    __slots__ = ("name", "num_classes", "hash", "is_default", "fits_closed_prompt")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    FITS_CLOSED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_classes: int
    hash: str
    is_default: bool
    fits_closed_prompt: bool
    def __init__(self, name: _Optional[str] = ..., num_classes: _Optional[int] = ..., hash: _Optional[str] = ..., is_default: _Optional[bool] = ..., fits_closed_prompt: _Optional[bool] = ...) -> None: ...

class ListTaxonomiesResponse(_message.Message):
    __slots__ = ("taxonomies",)
    TAXONOMIES_FIELD_NUMBER: _ClassVar[int]
    taxonomies: _containers.RepeatedCompositeFieldContainer[TaxonomyInfo]
    def __init__(self, taxonomies: _Optional[_Iterable[_Union[TaxonomyInfo, _Mapping]]] = ...) -> None: ...
