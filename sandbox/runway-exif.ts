/**
 * The few EXIF facts the sandbox reports about a prompt image: its orientation, and
 * whether it still says where (GPS) or with which camera it was taken. Reads the TIFF
 * structure of an EXIF block defensively: a damaged block yields what could be read.
 */

export interface ExifFacts {
  /** The Orientation tag (0x0112); 1 (upright) when absent. */
  readonly orientation: number;
  /** A GPS IFD pointer (0x8825) is present. */
  readonly gps: boolean;
  /** Make (0x010F), Model (0x0110) or BodySerialNumber (0xA431) is present. */
  readonly camera: boolean;
}

const TAG_ORIENTATION = 0x0112;
const TAG_MAKE = 0x010f;
const TAG_MODEL = 0x0110;
const TAG_EXIF_IFD = 0x8769;
const TAG_GPS_IFD = 0x8825;
const TAG_BODY_SERIAL_NUMBER = 0xa431;
const CAMERA_TAGS: ReadonlySet<number> = new Set([TAG_MAKE, TAG_MODEL, TAG_BODY_SERIAL_NUMBER]);

const TYPE_SHORT = 3;
const IFD_ENTRY_BYTES = 12;
/** Real IFDs hold tens of entries; a count far above that is a damaged block. */
const IFD_MAX_ENTRIES = 1000;

const NO_FACTS: ExifFacts = { orientation: 1, gps: false, camera: false };

/** `tiff` is the EXIF block without its "Exif\0\0" prefix: byte order, 42, IFD0 offset. */
export function readExifFacts(tiff: Buffer | undefined): ExifFacts {
  if (tiff === undefined || tiff.length < 8) return NO_FACTS;
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return NO_FACTS;
  const little = order === 'II';
  const u16 = (at: number): number => (little ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at: number): number => (little ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  if (u16(2) !== 42) return NO_FACTS;

  const entries = (ifdOffset: number): { tag: number; type: number; valueAt: number }[] => {
    if (ifdOffset < 8 || ifdOffset + 2 > tiff.length) return [];
    const count = Math.min(u16(ifdOffset), IFD_MAX_ENTRIES);
    const found: { tag: number; type: number; valueAt: number }[] = [];
    for (let index = 0; index < count; index += 1) {
      const at = ifdOffset + 2 + index * IFD_ENTRY_BYTES;
      if (at + IFD_ENTRY_BYTES > tiff.length) break;
      found.push({ tag: u16(at), type: u16(at + 2), valueAt: at + 8 });
    }
    return found;
  };

  let orientation = 1;
  let gps = false;
  let camera = false;
  let exifIfd: number | undefined;
  for (const entry of entries(u32(4))) {
    if (entry.tag === TAG_ORIENTATION && entry.type === TYPE_SHORT) orientation = u16(entry.valueAt);
    else if (entry.tag === TAG_GPS_IFD) gps = true;
    else if (CAMERA_TAGS.has(entry.tag)) camera = true;
    else if (entry.tag === TAG_EXIF_IFD) exifIfd = u32(entry.valueAt);
  }
  if (!camera && exifIfd !== undefined) {
    camera = entries(exifIfd).some((entry) => CAMERA_TAGS.has(entry.tag));
  }
  return { orientation, gps, camera };
}
