"""Headless Chromium (Debian's, driven by Playwright), against the real
servers of the integration tests, whose fixtures are used here too. The only
conftest that imports Playwright. Without chromium these tests skip, except in CI."""

import pytest
from playwright.sync_api import sync_playwright

from tests.browser.browser import Person, have_chromium, launch
from tests.conftest import require
# The integration tests' server fixtures, which the browser tests use too.
from tests.integration.conftest import (  # noqa: F401
    redis_server,
    shared_redis,
    shared_server,
    start_server,
)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a whole test module (each person gets a fresh context)."""
    require(have_chromium(), "chromium", "browser", " (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def people(browser):
    """people(name, **context_options): a new Person, whose pages must have
    logged no error by the end of the test (but those matching `person.allowed`)."""
    made = []

    def person(name, **options):
        made.append(Person(browser, name, **options))
        return made[-1]

    yield person
    errors = [error for p in made for error in p.unexpected_errors()]
    for p in made:
        p.close()
    assert not errors, "the pages logged errors:\n" + "\n".join(errors)
