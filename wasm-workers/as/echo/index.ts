// Echo: every message goes back to its sender unchanged; binary stays binary.
// The AssemblyScript twin of examples/echo (same behaviour, checked by the same tests).
import { Events, Message, gateway, registerEvents } from "../sdk/index";
export * from "../sdk/exports";

class Echo extends Events {
  onMessage(clientId: string, message: Message): void {
    gateway.sendToCurrentClient(message.data, message.binary);
  }
}

registerEvents(new Echo());
