"""Photos: upload (checked by content, size-limited), metadata, delete, media files."""

from __future__ import annotations

import struct
import zlib

import pytest

from minigram.app import create_app


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_upload_each_accepted_format(app_client, api, make_image, fmt, content_type):
    alice = api.user("alice")
    data = make_image(fmt)
    response = api.upload(
        alice,
        data,
        caption="at the beach",
        filename="whatever.bin",
        content_type="application/octet-stream",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["owner"] == "alice"
    assert body["caption"] == "at the beach"
    assert body["content_type"] == content_type
    assert body["size"] == len(data)
    assert body["likes"] == 0 and body["liked"] is False
    assert body["url"].startswith("/media/")
    assert set(body) == {
        "id",
        "owner",
        "caption",
        "url",
        "content_type",
        "size",
        "created_at",
        "likes",
        "liked",
    }

    media = app_client.get(body["url"])
    assert media.status_code == 200
    assert media.content == data
    assert media.headers["content-type"] == content_type
    assert media.headers["x-content-type-options"] == "nosniff"


def test_type_comes_from_content_not_from_name(api, make_image):
    alice = api.user("alice")
    response = api.upload(alice, make_image("PNG"), filename="cat.jpg", content_type="image/jpeg")
    assert response.status_code == 201
    assert response.json()["content_type"] == "image/png"
    assert response.json()["url"].endswith(".png")


def test_server_makes_up_the_stored_name(app_settings, api):
    alice = api.user("alice")
    response = api.upload(alice, filename="../../etc/passwd.png")
    assert response.status_code == 201
    name = response.json()["url"].rsplit("/", 1)[1]
    assert "passwd" not in name
    stored = [p.name for p in app_settings.media_dir.iterdir()]
    assert stored == [name]


def test_caption_is_optional(api):
    alice = api.user("alice")
    response = api.upload(alice)
    assert response.status_code == 201
    assert response.json()["caption"] == ""


@pytest.mark.parametrize(
    "data",
    [
        b"just some text, not an image at all",
        b"%PDF-1.4 pretend",
        b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        b"BM" + b"\x00" * 60,  # BMP is not accepted
    ],
)
def test_non_images_are_415(app_settings, api, data):
    alice = api.user("alice")
    response = api.upload(alice, data, filename="photo.png", content_type="image/png")
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_image"
    assert list(app_settings.media_dir.iterdir()) == []


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"garbage" * 20,
        b"\xff\xd8\xff" + b"\x00" * 10,
        b"GIF89a" + b"\x00",
        b"RIFF\x10\x00\x00\x00WEBPVP8 ",
    ],
)
def test_images_with_a_magic_number_but_a_broken_body_are_422(app_settings, api, data):
    alice = api.user("alice")
    response = api.upload(alice, data)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_image"
    assert list(app_settings.media_dir.iterdir()) == []


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused(api):
    alice = api.user("alice")
    response = api.upload(alice, _png_header_only(100_000, 100_000))
    assert response.status_code == 422
    assert response.json()["error"] == "image_too_large"


def test_empty_file_is_422(api):
    alice = api.user("alice")
    response = api.upload(alice, b"")
    assert response.status_code == 422


def test_missing_file_field_is_422(app_client, api):
    alice = api.user("alice")
    response = app_client.post(
        "/api/photos", headers=alice.headers, files={"caption": (None, "no file here")}
    )
    assert response.status_code == 422
    assert "file" in response.json()["detail"]


def test_file_field_sent_as_text_is_422(app_client, api):
    alice = api.user("alice")
    response = app_client.post(
        "/api/photos", headers=alice.headers, files={"file": (None, "not a file part")}
    )
    assert response.status_code == 422


def test_caption_too_long_is_422(api):
    alice = api.user("alice")
    response = api.upload(alice, caption="x" * 2201)
    assert response.status_code == 422
    assert "caption" in response.json()["detail"]
    assert api.upload(alice, caption="é" * 2200).status_code == 201


@pytest.mark.parametrize("caption", ["nul\x00byte", "x" * 2201])
def test_captions_no_database_can_store_are_422(api, caption):
    alice = api.user("alice")
    response = api.upload(alice, caption=caption)
    assert response.status_code == 422
    assert "caption" in response.json()["detail"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"file": "abc"}},
        {"content": b"raw bytes", "headers": {"content-type": "image/png"}},
        {"data": {"caption": "urlencoded"}},
    ],
)
def test_upload_must_be_multipart(app_client, api, kwargs):
    alice = api.user("alice")
    headers = {**alice.headers, **kwargs.pop("headers", {})}
    response = app_client.post("/api/photos", headers=headers, **kwargs)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_malformed_multipart_is_400(app_client, api):
    alice = api.user("alice")
    response = app_client.post(
        "/api/photos",
        headers={**alice.headers, "content-type": "multipart/form-data; boundary=xyz"},
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n',
    )
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


def test_oversized_upload_is_413_and_leaves_nothing(
    app_settings_factory, app_stage, test_client_factory, make_image
):
    settings = app_settings_factory(app_stage, max_upload_bytes=20_000)
    client = test_client_factory(create_app(settings))
    client.post("/api/register", json={"username": "alice", "password": "password123"})
    token = client.post("/api/login", json={"username": "alice", "password": "password123"})
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    big = make_image("BMP", size=(100, 100))  # 30 kB: type does not matter, size is first
    small = make_image("PNG")

    response = client.post(
        "/api/photos", headers=headers, files={"file": ("a.png", big + small, "image/png")}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"

    # a body far over the limit, streamed without a Content-Length, stops early too
    def chunks():
        boundary = b"--b0undary\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(1000):
            yield b"\x00" * 10_000

    response = client.post(
        "/api/photos",
        headers={**headers, "content-type": "multipart/form-data; boundary=b0undary"},
        content=chunks(),
    )
    assert response.status_code == 413

    assert list(settings.media_dir.iterdir()) == []
    assert client.get("/api/users/alice").json()["photos"] == 0
    assert (
        client.post(
            "/api/photos", headers=headers, files={"file": ("a.png", small, "image/png")}
        ).status_code
        == 201
    )


def test_upload_requires_login(app_client, make_image):
    response = app_client.post("/api/photos", files={"file": ("a.png", make_image(), "image/png")})
    assert response.status_code == 401


def test_get_photo_metadata(app_client, api):
    alice, bob = api.user("alice"), api.user("bob")
    created = api.photo(alice, caption="hello")
    response = app_client.get(f"/api/photos/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created

    app_client.post(f"/api/photos/{created['id']}/like", headers=bob.headers)
    as_bob = app_client.get(f"/api/photos/{created['id']}", headers=bob.headers).json()
    assert as_bob["likes"] == 1 and as_bob["liked"] is True
    as_alice = app_client.get(f"/api/photos/{created['id']}", headers=alice.headers).json()
    assert as_alice["likes"] == 1 and as_alice["liked"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/api/photos/999",
        "/api/photos/0",
        "/api/photos/99999999999",
        "/api/photos/abc",
        "/api/photos/-1",
        "/api/photos/1.5",
    ],
)
def test_unknown_photo_is_404(app_client, path):
    response = app_client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "name",
    [
        "nothere1234567890abcd.png",
        "..%2F..%2Fetc%2Fpasswd",
        "..%2Fminigram.db",
        "%2E%2E%2Fminigram.db",
        "short.png",
        "AAAAAAAAAAAAAAAAAAAA.exe",
        "AAAAAAAAAAAAAAAAAAAA.png%00.txt",
        ".seed",
    ],
)
def test_unknown_or_hostile_media_names_are_404(app_client, api, name):
    api.photo(api.user("alice"))
    response = app_client.get(f"/media/{name}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_owner_deletes_a_photo_with_its_file(app_client, app_settings, api):
    alice, bob = api.user("alice"), api.user("bob")
    photo = api.photo(alice)
    app_client.post(f"/api/photos/{photo['id']}/like", headers=bob.headers)
    assert app_client.get(photo["url"]).status_code == 200

    response = app_client.delete(f"/api/photos/{photo['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"deleted": True, "id": photo["id"]}
    assert app_client.get(f"/api/photos/{photo['id']}").status_code == 404
    assert app_client.get(photo["url"]).status_code == 404
    assert list(app_settings.media_dir.iterdir()) == []
    assert app_client.delete(f"/api/photos/{photo['id']}", headers=alice.headers).status_code == 404
    assert app_client.get("/api/users/alice").json()["photos"] == 0


def test_cannot_delete_someone_elses_photo(app_client, api):
    alice, bob = api.user("alice"), api.user("bob")
    photo = api.photo(alice)
    response = app_client.delete(f"/api/photos/{photo['id']}", headers=bob.headers)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert app_client.get(f"/api/photos/{photo['id']}").status_code == 200
    assert app_client.get(photo["url"]).status_code == 200


def test_new_photo_ids_are_never_reused(app_client, api):
    alice = api.user("alice")
    first = api.photo(alice)
    app_client.delete(f"/api/photos/{first['id']}", headers=alice.headers)
    second = api.photo(alice)
    assert second["id"] > first["id"]
