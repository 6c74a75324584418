/**
 * The model worker of WorkerHost (host.ts): one per base model, it holds the frozen weights in
 * its own wasm memory and runs that model's sessions (InThreadHost); the main thread only
 * forwards frames. Messages: `ToWorker` in, `FromWorker` out (bytes transferred, not copied).
 */
/// <reference lib="deno.worker" />
import {
  type FromWorker,
  InThreadHost,
  ownBuffer,
  type SessionHandle,
  type ToWorker,
} from "./host.ts";

let host: InThreadHost | null = null;
const sessions = new Map<number, SessionHandle>();

function post(m: FromWorker, transfer: Transferable[] = []): void {
  self.postMessage(m, transfer);
}

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  switch (m.t) {
    case "init":
      host = new InThreadHost(m.opts);
      break;
    case "open": {
      const session = m.spec.session;
      const handle = host!.open(m.spec, {
        send: (frame) => {
          const bytes = ownBuffer(frame);
          post({ t: "send", session, bytes }, [bytes]);
        },
        step: (report) => post({ t: "step", report }),
        refused: (code, message) => post({ t: "refused", session, code, message }),
        end: (code, reason) => {
          sessions.delete(session);
          post({ t: "end", session, code, reason });
        },
      });
      sessions.set(session, handle);
      break;
    }
    case "frame":
      sessions.get(m.session)?.deliver(new Uint8Array(m.bytes));
      break;
    case "active":
      try {
        sessions.get(m.session)?.setActiveModules(m.keys);
      } catch (err) {
        post({ t: "log", session: m.session, message: (err as Error).message });
      }
      break;
    case "tier":
      try {
        sessions.get(m.session)?.setTier(m.tier, m.rho);
      } catch (err) {
        post({ t: "log", session: m.session, message: (err as Error).message });
      }
      break;
    case "close":
      sessions.get(m.session)?.close(m.code, m.reason, m.error);
      break;
    case "shutdown":
      await host?.close();
      host = null;
      post({ t: "shutdown-done" });
      break;
  }
};
