"""Taxonomies and the mapping of free-form MLLM answers to taxonomy class ids.

A plain library: it never imports BentoML, and importing it loads neither
torch nor FAISS (they load when an encoder or index is first built).

    from mapping import Mapper, load_encoder, load_taxonomy

    mapper = Mapper(load_taxonomy("imagenet-1k"), load_encoder())
    mapper.map("a tabby cat sitting on a laptop").labels[0].id   # 'n02123045'
"""

from mapping.encoder import DEFAULT_ENCODER, EncoderError, TextEncoder, load_encoder
from mapping.encoder_cache import CachingEncoder
from mapping.mapper import Mapper
from mapping.parsing import ParsedAnswer, parse_answer, parse_option_letter, split_answers
from mapping.results import LabelScore, MappingResult
from mapping.taxonomy import Taxonomy, TaxonomyClass, TaxonomyError
from mapping.taxonomy_files import builtin_taxonomies, load_taxonomy

DEFAULT_CACHE_DIR = "~/.cache/mllm-classify"

__all__ = [
    "CachingEncoder",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_ENCODER",
    "EncoderError",
    "LabelScore",
    "Mapper",
    "MappingResult",
    "ParsedAnswer",
    "Taxonomy",
    "TaxonomyClass",
    "TaxonomyError",
    "TextEncoder",
    "builtin_taxonomies",
    "load_encoder",
    "load_taxonomy",
    "parse_answer",
    "parse_option_letter",
    "split_answers",
]
