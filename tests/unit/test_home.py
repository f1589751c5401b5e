def test_welcome_page_offers_name_room_and_three_transports(http):
    page = http.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="user"' in html and 'name="room"' in html and 'value="lobby"' in html
    for action in ('formaction="/websocket/room"', 'formaction="/longpolling"', 'formaction="/refresh"'):
        assert action in html


def test_pages_forbid_inline_script(http):
    csp = http.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'self'" in csp


def test_healthz(http):
    response = http.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_unknown_page_is_a_readable_404(http):
    response = http.get("/nope")
    assert response.status_code == 404
    assert response.mimetype == "text/html" and "Error 404" in response.get_data(as_text=True)


def test_a_malformed_host_is_a_400_not_a_500(http):
    """A Host no URL can be built for (an empty label) is refused: the error
    page cannot link to anything, so the refusal is JSON."""
    for path in ("/", "/refresh?user=ana&room=lobby", "/healthz"):
        response = http.get(path, headers={"Host": ".0.0.1:8000"})
        assert response.status_code == 400, path
        assert response.get_json()["error"]
