/**
 * Byte accounting per message type and direction (DLORA.md §7: devices and benchmarks report bytes
 * up and down per message type). up = device → coordinator, down = coordinator → device.
 */
import { OFF } from "./wire.ts";
import {
  type Direction,
  type MessageType,
  messageTypeOf,
  type Role,
  sendDirection,
} from "./wire.ts";

/** Frames whose type byte is unknown (malformed input still cost bandwidth). */
export type CountedType = MessageType | "INVALID";

export interface TypeCounts {
  bytesUp: number;
  bytesDown: number;
  framesUp: number;
  framesDown: number;
}

export interface WireStatsJSON extends TypeCounts {
  byType: Partial<Record<CountedType, TypeCounts>>;
}

export class WireStats {
  readonly #byType = new Map<CountedType, TypeCounts>();

  /** `role`, when given, is the side keeping these counts: it sends in its own direction. */
  constructor(readonly role?: Role) {}

  /** Counts one frame of `bytes` of `type` going `direction`. */
  record(direction: Direction, type: CountedType, bytes: number): void {
    if (!Number.isInteger(bytes) || bytes < 0) {
      throw new RangeError(`WireStats.record: bytes must be a non-negative integer, got ${bytes}`);
    }
    let c = this.#byType.get(type);
    if (!c) {
      c = { bytesUp: 0, bytesDown: 0, framesUp: 0, framesDown: 0 };
      this.#byType.set(type, c);
    }
    if (direction === "up") {
      c.bytesUp += bytes;
      c.framesUp++;
    } else {
      c.bytesDown += bytes;
      c.framesDown++;
    }
  }

  /** Counts a frame by its own bytes (type from the header; "INVALID" when unreadable). */
  recordFrame(direction: Direction, frame: Uint8Array): void {
    const type = frame.length > OFF.type ? messageTypeOf(frame[OFF.type]) : null;
    this.record(direction, type ?? "INVALID", frame.length);
  }

  /** Counts a frame this side sent (needs `role`). */
  sent(frame: Uint8Array): void {
    this.recordFrame(sendDirection(this.#needRole("sent")), frame);
  }

  /** Counts a frame this side received (needs `role`). */
  received(frame: Uint8Array): void {
    this.recordFrame(
      sendDirection(this.#needRole("received") === "device" ? "coordinator" : "device"),
      frame,
    );
  }

  #needRole(fn: string): Role {
    if (!this.role) {
      throw new Error(
        `WireStats.${fn}: construct WireStats with a role ("device" or "coordinator")`,
      );
    }
    return this.role;
  }

  /** Counts of one type (zeros when none). */
  of(type: CountedType): TypeCounts {
    return {
      ...(this.#byType.get(type) ?? { bytesUp: 0, bytesDown: 0, framesUp: 0, framesDown: 0 }),
    };
  }

  get bytesUp(): number {
    return this.#sum("bytesUp");
  }
  get bytesDown(): number {
    return this.#sum("bytesDown");
  }
  get framesUp(): number {
    return this.#sum("framesUp");
  }
  get framesDown(): number {
    return this.#sum("framesDown");
  }

  #sum(field: keyof TypeCounts): number {
    let s = 0;
    for (const c of this.#byType.values()) s += c[field];
    return s;
  }

  /** Adds another tally into this one (e.g. all devices of a run). */
  merge(other: WireStats): void {
    for (const [type, c] of other.#byType) {
      const mine = this.#byType.get(type) ??
        { bytesUp: 0, bytesDown: 0, framesUp: 0, framesDown: 0 };
      mine.bytesUp += c.bytesUp;
      mine.bytesDown += c.bytesDown;
      mine.framesUp += c.framesUp;
      mine.framesDown += c.framesDown;
      this.#byType.set(type, mine);
    }
  }

  reset(): void {
    this.#byType.clear();
  }

  /** Totals and per-type counts (types never seen are left out). */
  toJSON(): WireStatsJSON {
    const byType: Partial<Record<CountedType, TypeCounts>> = {};
    for (const [type, c] of this.#byType) byType[type] = { ...c };
    return {
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      framesUp: this.framesUp,
      framesDown: this.framesDown,
      byType,
    };
  }
}
