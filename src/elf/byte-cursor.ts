// A bounds-checked little-endian reader over part of a buffer, shared by the formats that are
// read byte by byte (.eh_frame, DWARF). Each format says how a truncated read is reported and
// keeps its own rules for what it reads beyond fixed-width integers (LEB128 limits, 64-bit
// values past 2^53, string encodings).

export abstract class ByteCursor {
  constructor(readonly buf: Buffer, public pos: number, readonly end: number) {}

  /** Throws the format's error for a read of `n` bytes that does not fit. */
  protected abstract truncated(n: number): never;

  need(n: number): void {
    if (n < 0 || this.pos < 0 || this.pos + n > this.end) this.truncated(n);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  s16(): number {
    this.need(2);
    const v = this.buf.readInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  s32(): number {
    this.need(4);
    const v = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  /** The next n bytes, as a view into the buffer. */
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}
