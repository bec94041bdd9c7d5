// Joins the room given in the query (?ws=..&token=..&room=..) with the SDK installed from npm, the way an
// application would, and shows the joined state; TypeScript checks the package's declarations (tsc --noEmit).
import { connect, PROTOCOL_VERSION, type Room, type RoomState } from "@podium/sdk";

const q = new URLSearchParams(location.search);
const status = document.getElementById("status")!;
const out = document.getElementById("state")!;

function show(room: Room, state: RoomState | null): void {
  out.textContent = JSON.stringify({
    protocol: PROTOCOL_VERSION,
    connection: room.connection,
    participant: room.participant,
    room: state?.room,
    role: state?.you.role,
    stage: room.stage.map((m) => m.id),
  });
}

try {
  const room = await connect({ url: q.get("ws")!, token: q.get("token")!, room: q.get("room")!, media: false });
  (window as unknown as { room: Room }).room = room;
  room.on("state", (s) => show(room, s));
  show(room, room.state);
  status.textContent = `joined ${room.state?.room} as ${room.participant?.id}`;
  document.body.dataset.joined = "true";
} catch (e) {
  status.textContent = `failed: ${(e as Error).message}`;
  document.body.dataset.joined = "false";
}
