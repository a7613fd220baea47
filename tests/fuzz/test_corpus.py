"""The hostile corpus (tests/fixtures/playlists/hostile): each file is refused, or served
with every URI signed, as its name says.

``refused_*`` files must be refused by every compiler (media, master, stitcher), with
`PlaylistError` and nothing else; the parsers, which check no URI, may accept those
whose only fault is a URI. ``accepted_*`` files compile, and every URI in the output
carries a token that verifies (`hostile.check_signed`). The same files seed the
generators of tests/fuzz/test_playlists.py.
"""

from __future__ import annotations

import pytest

from hls import (
    PlaylistError,
    Pod,
    compile_master_playlist,
    compile_media_playlist,
    parse_master_playlist,
    parse_media_playlist,
    stitch_media_playlist,
)
from hls.text import decode_playlist
from tests.fuzz.hostile import (
    AD,
    MASTER_PATH,
    MEDIA_PATH,
    ROOT,
    check_signed,
    corpus,
    only,
    signer,
)

CORPUS = corpus()


def test_corpus_is_there_and_small() -> None:
    names = [name for name, _ in CORPUS]
    assert len(names) >= 50
    assert all(name.startswith(("refused_", "accepted_")) for name in names)
    assert all(len(data) < 4096 for _, data in CORPUS)


def _compile_media(text: str) -> str:
    template = compile_media_playlist(text, playlist_path=MEDIA_PATH, root=ROOT)
    return template.render(signer().sign_many(template.paths))


def _compile_master(text: str) -> str:
    # preferring 1080p moves variants around (the last line may no longer be last)
    template = compile_master_playlist(
        text, playlist_path=MASTER_PATH, root=ROOT, max_height=None, preferred_height=1080
    )
    output = template.render(signer().sign_many(template.paths))
    assert len(parse_master_playlist(output).variants) == len(template.variants)
    return output


def _stitch(text: str) -> str:
    stitched = stitch_media_playlist(
        text,
        playlist_path=MEDIA_PATH,
        root=ROOT,
        pods=(Pod(index=0, at_s=0.0, ads=(AD,)), Pod(index=1, at_s=4.0, ads=(AD,))),
        content_height=720,
        content_container="ts",
    )
    return stitched.template.render(signer().sign_many(stitched.template.paths))


@pytest.mark.parametrize(("name", "data"), CORPUS, ids=[name for name, _ in CORPUS])
def test_corpus_file(name: str, data: bytes) -> None:
    text = only((PlaylistError,), decode_playlist, data)
    if text is None:
        assert name.startswith("refused_"), f"{name} is not even decoded"
        return
    assert isinstance(text, str)
    for parse in (parse_media_playlist, parse_master_playlist):
        only((PlaylistError,), parse, text)
    outputs = {
        compiler.__name__: only((PlaylistError,), compiler, text)
        for compiler in (_compile_media, _compile_master, _stitch)
    }
    accepted = {compiler: output for compiler, output in outputs.items() if output is not None}
    if name.startswith("refused_"):
        assert not accepted, f"{name} was accepted by {sorted(accepted)}"
        return
    assert accepted, f"{name} was refused"
    for compiler, output in accepted.items():
        assert isinstance(output, str)
        path = MASTER_PATH if compiler == "_compile_master" else MEDIA_PATH
        roots = (ROOT, "/hls/ads/") if compiler == "_stitch" else (ROOT,)
        assert check_signed(output, path, roots=roots) > 0
