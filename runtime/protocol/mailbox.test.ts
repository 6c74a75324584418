import { assertEquals, assertRejects } from "../../tests/util.ts";
import { Mailbox, MailboxTimeout } from "./mailbox.ts";

Deno.test("mailbox: items in arrival order, whether pushed before or while awaited", async () => {
  const m = new Mailbox<number>();
  m.push(1);
  m.push(2);
  assertEquals(await m.next(), 1);
  const later = m.next();
  m.push(3);
  assertEquals(await later, 2);
  assertEquals(await m.next(), 3);
  assertEquals(m.size, 0);
  await assertRejects(async () => {
    const a = m.next();
    const b = m.next();
    m.close(new Error("done"));
    await Promise.allSettled([a]);
    await b;
  }, /another wait is pending/);
});

Deno.test("mailbox: a wait times out with what it awaited; close rejects now or after draining", async () => {
  const m = new Mailbox<string>();
  const err = await assertRejects(() => m.next(20, "DELTA_Y"), /no DELTA_Y within 0.02 s/);
  assertEquals(err instanceof MailboxTimeout, true);
  m.push("late"); // a timed-out wait does not swallow the next item
  assertEquals(await m.next(10), "late");

  const drained = new Mailbox<string>();
  drained.push("a");
  drained.push("b");
  drained.close(new Error("peer left"), { drain: true });
  drained.push("ignored");
  assertEquals(await drained.next(), "a");
  assertEquals(await drained.next(), "b");
  await assertRejects(() => drained.next(), /peer left/);

  const dropped = new Mailbox<string>();
  dropped.push("a");
  const waiting = new Mailbox<string>();
  const pending = waiting.next();
  dropped.close(new Error("cancelled"));
  waiting.close(new Error("cancelled"));
  await assertRejects(() => dropped.next(), /cancelled/);
  await assertRejects(() => pending, /cancelled/);
  assertEquals(dropped.closed?.message, "cancelled");
});
