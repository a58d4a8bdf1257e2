"""Answer parsing and term cleaning (method step 3), and the benchmark
tool's smoke run."""
import pytest
from conftest import run_cli

from ov_eva.vocabulary.base import _term_list, match_class
from ov_eva.vocabulary.prompts import expand_prompt, perceive_prompt
from ov_eva.vocabulary.terms import (MAX_ANSWER_CHARS, AnswerError, clean_term,
                                     clean_terms, parse_json)


@pytest.mark.parametrize('answer,expected', [
    ('{"floor": ["parquet"]}', {
        'floor': ['parquet']
    }),
    ('```json\n{"floor": ["parquet"]}\n```', {
        'floor': ['parquet']
    }),
    ('Sure! Here you go: {"floor": ["parquet"]} Hope it helps.', {
        'floor': ['parquet']
    }),
    ("{'floor': ['parquet', 'rug',],}", {
        'floor': ['parquet', 'rug']
    }),
])
def test_tolerant_json(answer, expected):
    assert parse_json(answer, dict) == expected


@pytest.mark.parametrize('answer', [
    '', '   ', None, 'I cannot help with that.', '{"floor": [unclosed',
    '__import__("os").system("echo pwned")', 'x' * (MAX_ANSWER_CHARS + 1)
])
def test_unusable_answers(answer):
    with pytest.raises(AnswerError):
        parse_json(answer, dict)


def test_stage_one_accepts_object_or_list():
    assert _term_list('{"terms": ["a", "b"]}') == ['a', 'b']
    assert _term_list('["a"]') == ['a']
    assert _term_list('{"objects": ["a"]}') == ['a']


def test_cleaning_rules():
    assert clean_term('  Brick   WALL. ') == 'brick wall'
    assert clean_term('...') is None
    assert clean_term('') is None
    assert clean_term(42) is None
    assert clean_term('one two three four five six seven') is None  # > 6
    assert clean_term('x' * 61) is None  # > 60 chars
    assert clean_term('bell\u0007') is None  # non-printable
    assert clean_term('café table') == 'café table'
    assert clean_terms(['Rug', 'rug', ' RUG ', 'mat', None, 'tile'],
                       limit=2) == ['rug', 'mat']


def test_class_matching_by_any_synonym():
    classes = [['wall', 'brick wall'], ['floor']]
    assert match_class('Brick Wall', classes) == 'wall'
    assert match_class('floor', classes) == 'floor'
    assert match_class('ceiling', classes) is None


def test_prompts_carry_what_they_must():
    assert 'JSON' in perceive_prompt()
    text = expand_prompt(['wall', 'floor'], ['oak floor'], {}, 3)
    assert '["wall", "floor"]' in text and 'up to 3' in text
    assert 'already held' not in text
    again = expand_prompt(['wall'], [], {'wall': ['brick']}, 3)
    assert '{"wall": ["brick"]}' in again


def test_benchmark_tool_runs():
    out = run_cli('tools/benchmark_vocabulary.py', '--images', '4',
                  '--latency', '0.01', '--concurrency', '4')
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith('ratio sequential/concurrent: ')
    assert float(last.split(': ')[1]) > 0
