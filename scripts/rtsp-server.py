#!/usr/bin/python3
"""A tiny RTSP server for tests: serves one clip (H.264 + AAC in MP4) at rtsp://127.0.0.1:PORT/clip,
played in real time from its start for each client. Needs Debian's python3-gi and
gir1.2-gst-rtsp-server-1.0 (run with /usr/bin/python3)."""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( filesrc location={a.clip} ! qtdemux name=d "
        "d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 "
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        print(f"rtsp-server: cannot listen on 127.0.0.1:{a.port}", file=sys.stderr)
        return 1
    print(f"rtsp-server: rtsp://127.0.0.1:{a.port}/clip", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
