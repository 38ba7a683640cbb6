__version__ = "0.1.0"


def package_versions(*packages: str) -> dict[str, str]:
    """`{"interlace-hf": ..., "python": ..., package: version, ...}` for the provenance of results files, read from the
    installed distributions' metadata (nothing is imported: no torch for `torch`). Packages not installed are left out.
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {"interlace-hf": __version__, "python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions
