"""Remote paths stay inside the folder agreed with the partner, whatever they are made of."""

from __future__ import annotations

import json

import pytest

from connectors.errors import ConfigurationError, PathOutsideFolder
from connectors.sftp import SftpHook, host_key_entry, parse_public_key
from tests.partners.fixtures import define_connection

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl land"


def hook_for(monkeypatch, folder: str) -> SftpHook:
    document = {"conn_type": "lienthong_sftp", "host": "127.0.0.1", "login": "population",
                "extra": {"remote_folder": folder, "host_key": HOST_KEY}}  # fmt: skip
    return SftpHook(define_connection(monkeypatch, "paths", document))


@pytest.mark.parametrize(
    ("relative", "absolute"),
    [("inbox/a.zip", "/srv/land/inbox/a.zip"), ("./inbox//a.zip", "/srv/land/inbox/a.zip"), ("", "/srv/land")],
)
def test_paths_are_taken_inside_the_folder(monkeypatch, relative, absolute):
    assert hook_for(monkeypatch, "/srv/land/").remote_path(relative) == absolute


@pytest.mark.parametrize("relative", ["..", "../land2/x", "inbox/../../x", "/srv/land/x", "a\\..\\..\\x", "a\0"])
def test_paths_that_leave_the_folder_are_refused(monkeypatch, relative):
    with pytest.raises(PathOutsideFolder):
        hook_for(monkeypatch, "/srv/land").remote_path(relative)


def test_a_sibling_folder_with_the_same_prefix_is_outside(monkeypatch):
    hook = hook_for(monkeypatch, "/srv/land")
    assert not hook._inside("/srv/landmark/x") and hook._inside("/srv/land/x")


def test_pinned_keys_are_read_as_openssh_lines():
    assert parse_public_key(HOST_KEY).get_name() == "ssh-ed25519"
    with pytest.raises(ConfigurationError):
        parse_public_key("ssh-ed25519")
    with pytest.raises(ConfigurationError):
        parse_public_key("ssh-ed25519 not-base64!")
    assert host_key_entry("h", 22) == "h" and host_key_entry("h", 2222) == "[h]:2222"


def test_the_connection_is_read_from_the_environment(monkeypatch):
    hook = hook_for(monkeypatch, "/srv/land")
    assert hook.folder == "/srv/land" and hook.port == 22
    assert json.loads(json.dumps(hook.extras.values))["remote_folder"] == "/srv/land"
