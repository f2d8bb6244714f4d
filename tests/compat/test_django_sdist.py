# Where the Django comparison gets Django's tests from (django_suite.django_tests_dir, through sdist.py),
# on a small sdist made here: only its tests/ folder is unpacked, once; a
# cached sdist or unpacked folder is used again without downloading.
import io
import tarfile

import pytest

from tests.compat import sdist
from tests.compat.django_suite import HarnessError, django_tests_dir


def make_sdist(folder, version, name="django", files=None):
    files = files or {"tests/runtests.py": "print('hi')\n", "tests/basic/tests.py": "", "django/__init__.py": ""}
    path = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args):
        raise AssertionError("downloaded although the sdist was cached")

    monkeypatch.setattr(sdist, "_download_sdist", refuse)


def test_only_the_tests_folder_of_a_cached_sdist_is_unpacked(tmp_path, no_download):
    make_sdist(tmp_path, "9.9.9")

    tests = django_tests_dir("9.9.9", tmp_path, log=lambda message: None)

    assert tests == tmp_path / "django-9.9.9" / "tests"
    assert (tests / "runtests.py").read_text() == "print('hi')\n"
    assert (tests / "basic" / "tests.py").exists()
    assert not (tmp_path / "django-9.9.9" / "django").exists()


def test_a_second_call_uses_the_unpacked_folder(tmp_path, no_download):
    archive = make_sdist(tmp_path, "9.9.9")
    django_tests_dir("9.9.9", tmp_path, log=lambda message: None)
    archive.unlink()

    assert django_tests_dir("9.9.9", tmp_path, log=lambda message: None) == tmp_path / "django-9.9.9" / "tests"


def test_older_capitalised_sdist_names_are_found(tmp_path, no_download):
    make_sdist(tmp_path, "4.2.1", name="Django")

    assert (django_tests_dir("4.2.1", tmp_path, log=lambda message: None) / "runtests.py").exists()


def test_an_sdist_without_runtests_is_refused(tmp_path, no_download):
    make_sdist(tmp_path, "9.9.9", files={"tests/other.py": ""})

    with pytest.raises(HarnessError, match=r"no tests/runtests\.py"):
        django_tests_dir("9.9.9", tmp_path, log=lambda message: None)
    assert not (tmp_path / "django-9.9.9").exists()  # not taken for a good one next time
