"""A photo carrying every kind of metadata a camera and an editor leave: for the tests of the metadata policy."""

import io

from PIL import Image, ImageCms

from imgpipe_image_worker import metadata
from imgpipe_ops.samples import photo_like_jpeg

ARTIST, COPYRIGHT, MAKE, GPS, EXIF_IFD, SERIAL = 0x013B, 0x8298, 0x010F, 0x8825, 0x8769, 0xA431
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    b' exif:GPSLatitude="48,51.4N" exif:GPSLongitude="2,21.1E"><dc:title>Shoe</dc:title>'
    b"<exif:GPSAltitude>35/1</exif:GPSAltitude></rdf:Description></rdf:RDF></x:xmpmeta>"
)
IPTC = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0b\x1c\x02\x74\x00\x07(c) Ann"
PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def tagged_jpeg(quality: int) -> bytes:
    """A photo with everything a camera and an editor leave: GPS, the body's serial, copyright, XMP with
    GPS, a comment, IPTC and an ICC profile."""
    exif = Image.Exif()
    exif[MAKE] = "Camera Co"
    exif[ARTIST] = "Ann Author"
    exif[COPYRIGHT] = "(c) Ann Author"
    exif.get_ifd(EXIF_IFD)[SERIAL] = "SN-123456"
    exif.get_ifd(GPS).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 6.0)})
    image = Image.open(io.BytesIO(photo_like_jpeg(640, 480, seed=11)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif, xmp=XMP, comment=b"shot by SN-123456", icc_profile=PROFILE)
    return metadata._insert(out.getvalue(), [metadata._segment(0xED, IPTC)])
