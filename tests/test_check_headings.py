import json

import pytest

from check_headings import bad_headings, check, main


def test_bad_headings():
    assert bad_headings('## Title\ntext') == []                       # starts its cell
    assert bad_headings('text\n\n## Next') == []                      # after a blank line
    assert bad_headings('text\n## Next') == [(2, '## Next')]          # interrupts a paragraph
    assert bad_headings('```python\nx = 1\n# a comment\n```') == []   # inside a code fence
    assert bad_headings('a\n#hashtag') == []                          # not a heading without the space


def test_check_and_main(tmp_path):
    nb = {'cells': [{'cell_type': 'markdown', 'source': ['Some text\n', '### Heading']},
                    {'cell_type': 'code', 'source': ['x = 1\n', '# comment']}]}
    p = tmp_path / 'x.ipynb'; p.write_text(json.dumps(nb))
    problems = check([p])
    assert len(problems) == 1 and 'cell 0, line 2' in problems[0] and '### Heading' in problems[0]
    with pytest.raises(SystemExit, match='1 heading'): main([str(p)])
