"""The test Hub (`tests/hub_server.py`) against the real `huggingface_hub` 2.4 client and `transformers`.

The server is module-scoped and the client is pointed at it with `point_clients_at` (patching the constants that
`huggingface_hub` reads from `HF_ENDPOINT` at import), so these tests pass whatever module imported
`huggingface_hub` first. `test_start_session_hub_sets_the_endpoint_before_import` checks the other route, the one a
session-wide `conftest.py` uses: `HF_ENDPOINT` set before the import, in a fresh interpreter.

The retry tests pin what the client retries by itself (see `HubServer.fail_next`), so that an upgrade that changes it
is noticed.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2
import pytest
from hub_server import HubServer, git_blob_oid, point_clients_at

ALICE, BOB = "hf_alice_test_token", "hf_bob_test_token"
BIG = 11 * 1024 * 1024  # over the Hub's 10 MiB limit for regular (non-LFS) files


@pytest.fixture(scope="module")
def hub():
    with HubServer(tokens={ALICE: "alice", BOB: "bob"}, orgs={"alice": ["alice-lab"]}) as server:
        undo = point_clients_at(server.url)
        yield server
        undo()


@pytest.fixture(autouse=True)
def fresh_hub(hub):
    hub.reset()
    yield


@pytest.fixture
def api(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=ALICE)


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    (folder / "sub" / "notes.txt").write_text("hello")
    (folder / "weights.bin").write_bytes(os.urandom(BIG))
    return folder


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_whoami_and_create_repo(api, hub):
    from huggingface_hub.errors import HfHubHTTPError

    me = api.whoami()
    assert me["name"] == "alice" and [org["name"] for org in me["orgs"]] == ["alice-lab"]
    url = api.create_repo("alice/tiny")
    assert url.repo_id == "alice/tiny" and url == f"{hub.url}/alice/tiny"
    assert api.create_repo("alice/tiny", exist_ok=True).repo_id == "alice/tiny"
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo("alice/tiny")
    assert conflict.value.response.status_code == 409
    assert api.create_repo("alice-lab/shared").repo_id == "alice-lab/shared"
    assert api.list_repo_files("alice/tiny") == [".gitattributes"]  # the Hub's initial commit


def test_upload_folder_then_download(api, hub, model_folder, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download

    api.create_repo("alice/tiny")
    commit = api.upload_folder(repo_id="alice/tiny", folder_path=model_folder, commit_message="Add model")
    expected = folder_files(model_folder)
    assert hub.files("alice/tiny") == {**expected, ".gitattributes": hub.files("alice/tiny")[".gitattributes"]}
    assert sorted(api.list_repo_files("alice/tiny")) == sorted([".gitattributes", *expected])

    info = api.model_info("alice/tiny", files_metadata=True)
    assert info.sha == commit.oid
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["weights.bin"].size == BIG and siblings["weights.bin"].lfs is not None  # reported as LFS
    assert siblings["config.json"].lfs is None and siblings["config.json"].blob_id == git_blob_oid(
        expected["config.json"]
    )

    snapshot = Path(snapshot_download("alice/tiny", cache_dir=tmp_path / "cache", token=False))
    assert folder_files(snapshot) == {**expected, ".gitattributes": (snapshot / ".gitattributes").read_bytes()}

    path = hf_hub_download("alice/tiny", "sub/notes.txt", revision=commit.oid, cache_dir=tmp_path / "c2", token=False)
    assert Path(path).read_text() == "hello"
    assert f"/snapshots/{commit.oid}/" in Path(path).as_posix()


def test_second_identical_upload_is_a_no_op(api, hub, model_folder):
    api.create_repo("alice/tiny")
    first = api.upload_folder(repo_id="alice/tiny", folder_path=model_folder)
    commits_before = hub.requests.count(("POST", "/api/models/alice/tiny/commit/main"))
    second = api.upload_folder(repo_id="alice/tiny", folder_path=model_folder)
    assert second.oid == first.oid
    assert hub.requests.count(("POST", "/api/models/alice/tiny/commit/main")) == commits_before

    (model_folder / "sub" / "notes.txt").write_text("changed")
    third = api.upload_folder(repo_id="alice/tiny", folder_path=model_folder)
    assert third.oid != first.oid
    assert hub.files("alice/tiny")["sub/notes.txt"] == b"changed"
    assert [c.commit_id for c in api.list_repo_commits("alice/tiny")][:2] == [third.oid, first.oid]


def test_pull_requests(api, hub, model_folder, tmp_path):
    from huggingface_hub import hf_hub_download

    api.create_repo("alice/tiny")
    main_before = api.model_info("alice/tiny").sha
    # `create_commit` path: one POST /commit/main?create_pr=1.
    pr = api.upload_file(path_or_fileobj=b"v2", path_in_repo="notes.txt", repo_id="alice/tiny", create_pr=True)
    assert (pr.pr_revision, pr.pr_num) == ("refs/pr/1", 1)
    # `upload_folder` path: POST /discussions opens the PR, then commits go to refs/pr/2.
    pr2 = api.upload_folder(repo_id="alice/tiny", folder_path=model_folder / "sub", create_pr=True)
    assert pr2.pr_revision == "refs/pr/2"

    assert api.model_info("alice/tiny").sha == main_before  # main untouched
    assert hub.files("alice/tiny", revision="refs/pr/1")["notes.txt"] == b"v2"
    assert "notes.txt" in hub.files("alice/tiny", revision="refs/pr/2")
    path = hf_hub_download("alice/tiny", "notes.txt", revision="refs/pr/1", cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == b"v2"
    refs = api.list_repo_refs("alice/tiny", include_pull_requests=True)
    assert [r.ref for r in refs.pull_requests] == ["refs/pr/1", "refs/pr/2"]
    # Anyone who can read the repo may open a PR, as on the Hub.
    from huggingface_hub import HfApi

    bob = HfApi(endpoint=hub.url, token=BOB)
    assert bob.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id="alice/tiny", create_pr=True).pr_num == 3


def test_private_repos_and_permissions(api, hub, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    api.create_repo("alice/secret", private=True)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="alice/secret")
    assert api.model_info("alice/secret").private is True

    anonymous, bob = HfApi(endpoint=hub.url, token=False), HfApi(endpoint=hub.url, token=BOB)
    for client in (anonymous, bob):
        with pytest.raises(RepositoryNotFoundError):
            client.model_info("alice/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/secret", "config.json", cache_dir=tmp_path, token=False)
    assert Path(hf_hub_download("alice/secret", "config.json", cache_dir=tmp_path, token=ALICE)).read_bytes() == b"{}"

    api.update_repo_settings("alice/secret", private=False)
    assert anonymous.model_info("alice/secret").private is False

    with pytest.raises(HfHubHTTPError) as forbidden:
        bob.create_repo("alice/bobs-repo")
    assert forbidden.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as forbidden:
        bob.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="alice/secret")
    assert forbidden.value.response.status_code == 403

    bad = HfApi(endpoint=hub.url, token="hf_not_a_token")
    for call in (bad.whoami, lambda: bad.create_repo("alice/x"), lambda: bad.model_info("alice/secret")):
        with pytest.raises(HfHubHTTPError) as unauthorized:
            call()
        assert unauthorized.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as unauthorized:
        anonymous.create_repo("alice/x")
    assert unauthorized.value.response.status_code == 401

    api.delete_repo("alice/secret")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("alice/secret")


def test_tree_paths_info_card_and_errors(api, hub, tmp_path):
    from huggingface_hub import ModelCard, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    hub.add_repo("alice/tiny", {"a/b/c.txt": b"c", "a/d.txt": b"d", "model.safetensors": b"tiny weights"})
    top = {entry.path for entry in api.list_repo_tree("alice/tiny")}
    assert top == {".gitattributes", "a", "model.safetensors"}
    nested = {entry.path for entry in api.list_repo_tree("alice/tiny", path_in_repo="a", recursive=True, expand=True)}
    assert nested == {"a/b", "a/b/c.txt", "a/d.txt"}
    (info,) = api.get_paths_info("alice/tiny", ["a/d.txt", "missing.txt"])
    assert info.blob_id == git_blob_oid(b"d") and info.size == 1
    (weights,) = api.get_paths_info("alice/tiny", "model.safetensors")
    assert weights.lfs is not None  # weight suffixes are LFS on the Hub, whatever their size

    ModelCard("---\nlicense: mit\ntags:\n- interlace\n---\n# Tiny\n").push_to_hub("alice/tiny", token=ALICE)
    info = api.model_info("alice/tiny")
    assert info.card_data.license == "mit" and info.tags == ["interlace"]
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_file(path_or_fileobj=b"---\n: [\n---\n", path_in_repo="README.md", repo_id="alice/tiny")

    with pytest.raises(EntryNotFoundError):
        hf_hub_download("alice/tiny", "nope.txt", cache_dir=tmp_path, token=False)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/tiny", "a/d.txt", revision="no-such-branch", cache_dir=tmp_path, token=False)


def test_collections(api, hub):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    hub.add_repo("alice/tiny")
    hub.add_repo("alice/small")
    collection = api.create_collection("INTERLACE models", description="Pruned Qwen3-VL")
    assert collection.slug.startswith("alice/interlace-models-") and collection.items == []
    assert api.create_collection("INTERLACE models", exists_ok=True).slug == collection.slug

    api.add_collection_item(collection.slug, "alice/tiny", "model", note="12 -> 9 layers")
    api.add_collection_item(collection.slug, "alice/small", "model")
    again = api.add_collection_item(collection.slug, "alice/tiny", "model", exists_ok=True)
    assert [item.item_id for item in again.items] == ["alice/tiny", "alice/small"]
    with pytest.raises(HfHubHTTPError) as conflict:
        api.add_collection_item(collection.slug, "alice/tiny", "model")
    assert conflict.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError) as missing:
        api.add_collection_item(collection.slug, "alice/no-such-model", "model")
    assert missing.value.response.status_code == 404

    fetched = HfApi(endpoint=hub.url, token=False).get_collection(collection.slug)
    assert fetched.title == "INTERLACE models" and fetched.items[0].note == "12 -> 9 layers"
    small = fetched.items[1]
    api.update_collection_item(collection.slug, small.item_object_id, position=0)
    assert [i.item_id for i in api.get_collection(collection.slug).items] == ["alice/small", "alice/tiny"]
    updated = api.update_collection_metadata(collection.slug, description="v2")
    assert updated.description == "v2"

    with pytest.raises(HfHubHTTPError) as forbidden:
        HfApi(endpoint=hub.url, token=BOB).add_collection_item(collection.slug, "alice/tiny", "model")
    assert forbidden.value.response.status_code == 403
    api.delete_collection(collection.slug)
    api.delete_collection(collection.slug, missing_ok=True)


def test_transformers_auto_config(api, hub, tmp_path):
    from transformers import AutoConfig, BertConfig

    config = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    config.save_pretrained(tmp_path / "cfg")
    api.create_repo("alice/bert")
    commit = api.upload_folder(repo_id="alice/bert", folder_path=tmp_path / "cfg")
    for revision in (None, commit.oid):
        loaded = AutoConfig.from_pretrained("alice/bert", revision=revision, cache_dir=tmp_path / "cache", token=ALICE)
        assert isinstance(loaded, BertConfig) and loaded.hidden_size == 8
    with pytest.raises(OSError):
        AutoConfig.from_pretrained("alice/missing", cache_dir=tmp_path / "cache", token=ALICE)


# ---------------------------------------------------------------------- what the client retries by itself
def test_upload_folder_retries_its_commit(api, hub, model_folder):
    api.create_repo("alice/tiny")
    hub.fail_next(2, status=500, path_contains="/commit/", retry_after=0)
    api.upload_folder(repo_id="alice/tiny", folder_path=model_folder)
    statuses = [e["status"] for e in hub.log if "/commit/" in e["path"]]
    assert statuses == [500, 500, 200]
    assert hub.files("alice/tiny")["config.json"] == (model_folder / "config.json").read_bytes()


def test_create_commit_does_not_retry_its_commit(api, hub):
    from huggingface_hub.errors import HfHubHTTPError

    api.create_repo("alice/tiny")
    hub.fail_next(1, status=503, path_contains="/commit/")
    with pytest.raises(HfHubHTTPError) as failed:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/tiny")
    assert failed.value.response.status_code == 503
    # A lost answer: the commit exists although the client saw an error, so a blind retry commits twice.
    hub.fail_next(1, path_contains="/commit/", mode="drop_after")
    with pytest.raises(httpx2.RemoteProtocolError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/tiny")
    assert hub.files("alice/tiny")["x.txt"] == b"x"


def test_which_reads_retry(api, hub, tmp_path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    hub.add_repo("alice/tiny", {"config.json": b"{}"})
    hub.fail_next(1, status=429, path_contains="/api/models/alice/tiny")
    with pytest.raises(HfHubHTTPError):  # model_info: no retry
        api.model_info("alice/tiny")
    hub.fail_next(1, status=500, path_contains="/tree/", retry_after=0)
    assert ".gitattributes" in api.list_repo_files("alice/tiny")  # paginated listings retry

    def download(name):
        return hf_hub_download("alice/tiny", "config.json", cache_dir=tmp_path / name, token=False)

    hub.fail_next(1, status=500, path_contains="/resolve/", method="HEAD")
    assert Path(download("head-500")).read_bytes() == b"{}"  # HEAD: retried when nothing is cached
    hub.fail_next(1, path_contains="/resolve/", method="HEAD", mode="drop")
    with pytest.raises(httpx2.RemoteProtocolError):  # ... but not a dropped HEAD
        download("head-drop")
    hub.fail_next(1, path_contains="/resolve/", method="GET", mode="drop")
    assert Path(download("get-drop")).read_bytes() == b"{}"  # GET: dropped connections resume
    hub.fail_next(1, status=500, path_contains="/resolve/", method="GET")
    with pytest.raises(HfHubHTTPError):  # ... but a 5xx does not
        download("get-500")


# ---------------------------------------------------------------------- the conftest route
def test_start_session_hub_sets_the_endpoint_before_import(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        from hub_server import start_session_hub

        hub = start_session_hub(tokens={"hf_t": "alice"}, hf_home=sys.argv[1])
        from huggingface_hub import HfApi, constants
        from transformers import AutoConfig

        assert constants.ENDPOINT == hub.url and not constants.HF_HUB_OFFLINE
        api = HfApi(token="hf_t")
        api.create_repo("alice/env")
        api.upload_file(path_or_fileobj=b'{"model_type": "bert"}', path_in_repo="config.json", repo_id="alice/env")
        print(type(AutoConfig.from_pretrained("alice/env")).__name__)
        hub.stop()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env["HF_HUB_OFFLINE"] = "1"  # as scripts/test.sh exports it: start_session_hub must clear it
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "hf_home")], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "BertConfig"
