"""Writes the base image's one layer as a tar: the non-root user 65532
(/etc/passwd, /etc/group), the CA certificates of the build machine, and a
writable /tmp. Every entry has fixed owners and times, so that the same
inputs give the same bytes, and so the same image digest.

    python3 deploy/image/base.py CA_BUNDLE OUT.tar
"""
import io
import sys
import tarfile

ca_bundle, out = sys.argv[1], sys.argv[2]


def entry(tar, name, data=None, mode=0o644, kind=tarfile.REGTYPE, owner=0):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 0
    info.uid = info.gid = owner
    info.uname = info.gname = "nonroot" if owner else "root"
    if data is None:
        tar.addfile(info)
        return
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


with open(ca_bundle, "rb") as f:
    certs = f.read()
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
    for d in ("etc", "etc/ssl", "etc/ssl/certs", "home"):
        entry(tar, d, mode=0o755, kind=tarfile.DIRTYPE)
    entry(tar, "home/nonroot", mode=0o700, kind=tarfile.DIRTYPE, owner=65532)
    entry(tar, "etc/group", b"root:x:0:\nnonroot:x:65532:\n")
    entry(tar, "etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    entry(tar, "etc/ssl/certs/ca-certificates.crt", certs)
    entry(tar, "tmp", mode=0o1777, kind=tarfile.DIRTYPE)
