// relay-gateway test peer on Mono's WCF (System.ServiceModel): NetTcpBinding with
// SecurityMode.None. Built by tests/peers/install.sh into target/peers/MonoPeer.exe.
//
//   host ECHO_PORT BLOB_PORT [PUBLIC_PORT]   echo service (ICalc) on net.tcp://127.0.0.1:ECHO_PORT/calc,
//                                            streamed blob service (IBlob) on net.tcp://127.0.0.1:BLOB_PORT/blob;
//                                            with PUBLIC_PORT the calc endpoint's logical address uses that port
//                                            (a host behind a relay). Prints "ready" when listening.
//   calc URI                                 Echo, Add, one-way Note, LastNote against URI; prints one line each
//   blob URI N                               Get(N) over TransferMode.Streamed; prints "blob N <checksum>"
//   relayhost CALC:PUB BLOB:PUB CHAT:PUB     calc, blob and the duplex chat service (IChat), each listening on
//                                            127.0.0.1:LOCAL with the logical address 127.0.0.1:PUB (behind a
//                                            relay). Prints "ready" when listening.
//   chat URI                                 duplex: Say("hi"), wait for the Heard callback; prints "Heard <text>"
//   note URI TEXT                            a one-way client: Note(TEXT) only; prints "sent"
//   lastnote URI                             prints "LastNote <text>"
using System;
using System.IO;
using System.ServiceModel;
using System.ServiceModel.Channels;
using System.Threading;

[ServiceContract(Namespace = "urn:relay-gateway:test")]
public interface ICalc {
    [OperationContract] string Echo(string text);
    [OperationContract] int Add(int a, int b);
    [OperationContract(IsOneWay = true)] void Note(string text);
    [OperationContract] string LastNote();
}

[ServiceBehavior(AddressFilterMode = AddressFilterMode.Any, InstanceContextMode = InstanceContextMode.Single)]
public class Calc : ICalc {
    string last = "";
    public string Echo(string text) { return text; }
    public int Add(int a, int b) { return a + b; }
    public void Note(string text) { lock (this) last = text; }
    public string LastNote() { lock (this) return last; }
}

[ServiceContract(Namespace = "urn:relay-gateway:test")]
public interface IBlob { [OperationContract] Stream Get(int n); }

[ServiceBehavior(AddressFilterMode = AddressFilterMode.Any)]
public class Blob : IBlob {
    public Stream Get(int n) {
        var b = new byte[n];
        for (int i = 0; i < n; i++) b[i] = (byte)((i * 7) % 256);
        return new MemoryStream(b);
    }
}

[ServiceContract(Namespace = "urn:relay-gateway:test", CallbackContract = typeof(IChatCallback), SessionMode = SessionMode.Required)]
public interface IChat { [OperationContract(IsOneWay = true)] void Say(string text); }
public interface IChatCallback { [OperationContract(IsOneWay = true)] void Heard(string text); }

[ServiceBehavior(AddressFilterMode = AddressFilterMode.Any)]
public class Chat : IChat {
    public void Say(string text) {
        OperationContext.Current.GetCallbackChannel<IChatCallback>().Heard("heard " + text);
    }
}

class ChatCallback : IChatCallback {
    public readonly ManualResetEvent Done = new ManualResetEvent(false);
    public string Text;
    public void Heard(string text) { Text = text; Done.Set(); }
}

static class Program {
    // Host `service` for `contract` listening on 127.0.0.1:LOCAL with logical address 127.0.0.1:PUB.
    static ServiceHost Behind(object service, Type contract, Binding binding, string ports, string path) {
        var p = ports.Split(':');
        var h = service is Type ? new ServiceHost((Type)service) : new ServiceHost(service);
        h.AddServiceEndpoint(contract, binding, "net.tcp://127.0.0.1:" + p[1] + "/" + path,
                             new Uri("net.tcp://127.0.0.1:" + p[0] + "/" + path));
        h.Open();
        return h;
    }

    static NetTcpBinding Binding(bool streamed) {
        var b = new NetTcpBinding(SecurityMode.None);
        if (streamed) b.TransferMode = TransferMode.Streamed;
        b.MaxReceivedMessageSize = 1L << 30;
        b.ReaderQuotas = System.Xml.XmlDictionaryReaderQuotas.Max;
        b.CloseTimeout = TimeSpan.FromSeconds(5);
        b.SendTimeout = TimeSpan.FromSeconds(30);
        return b;
    }

    static int Main(string[] args) {
        try {
            switch (args[0]) {
                case "host": {
                    int echo = int.Parse(args[1]), blob = int.Parse(args[2]);
                    var calc = new ServiceHost(new Calc());
                    if (args.Length > 3)
                        calc.AddServiceEndpoint(typeof(ICalc), Binding(false), "net.tcp://127.0.0.1:" + args[3] + "/calc",
                                                new Uri("net.tcp://127.0.0.1:" + echo + "/calc"));
                    else
                        calc.AddServiceEndpoint(typeof(ICalc), Binding(false), "net.tcp://127.0.0.1:" + echo + "/calc");
                    calc.Open();
                    var blobs = new ServiceHost(typeof(Blob));
                    blobs.AddServiceEndpoint(typeof(IBlob), Binding(true), "net.tcp://127.0.0.1:" + blob + "/blob");
                    blobs.Open();
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                    Thread.Sleep(Timeout.Infinite);
                    return 0;
                }
                case "relayhost": {
                    Behind(new Calc(), typeof(ICalc), Binding(false), args[1], "calc");
                    Behind(typeof(Blob), typeof(IBlob), Binding(true), args[2], "blob");
                    Behind(typeof(Chat), typeof(IChat), Binding(false), args[3], "chat");
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                    Thread.Sleep(Timeout.Infinite);
                    return 0;
                }
                case "chat": {
                    var cb = new ChatCallback();
                    var f = new DuplexChannelFactory<IChat>(new InstanceContext(cb), Binding(false), new EndpointAddress(args[1]));
                    var c = f.CreateChannel();
                    c.Say("hi");
                    if (!cb.Done.WaitOne(20000)) throw new TimeoutException("no callback");
                    Console.WriteLine("Heard " + cb.Text);
                    ((IClientChannel)c).Abort(); // Mono: Close() on a duplex channel never returns
                    break;
                }
                case "note": {
                    var f = new ChannelFactory<ICalc>(Binding(false), new EndpointAddress(args[1]));
                    var c = f.CreateChannel();
                    c.Note(args[2]);
                    ((IClientChannel)c).Close();
                    Console.WriteLine("sent");
                    break;
                }
                case "lastnote": {
                    var f = new ChannelFactory<ICalc>(Binding(false), new EndpointAddress(args[1]));
                    var c = f.CreateChannel();
                    Console.WriteLine("LastNote " + c.LastNote());
                    ((IClientChannel)c).Close();
                    break;
                }
                case "calc": {
                    var f = new ChannelFactory<ICalc>(Binding(false), new EndpointAddress(args[1]));
                    var c = f.CreateChannel();
                    Console.WriteLine("Echo " + c.Echo("hello from mono"));
                    Console.WriteLine("Add " + c.Add(20, 22));
                    c.Note("noted by mono");
                    Console.WriteLine("LastNote " + c.LastNote());
                    ((IClientChannel)c).Close();
                    f.Close();
                    break;
                }
                case "blob": {
                    int n = int.Parse(args[2]);
                    var f = new ChannelFactory<IBlob>(Binding(true), new EndpointAddress(args[1]));
                    var s = f.CreateChannel().Get(n);
                    long total = 0, sum = 0; int r; var buf = new byte[8192];
                    while ((r = s.Read(buf, 0, buf.Length)) > 0) {
                        for (int i = 0; i < r; i++) sum = (sum * 31 + buf[i]) % 1000000007;
                        total += r;
                    }
                    Console.WriteLine("blob " + total + " " + sum);
                    break;
                }
                default:
                    Console.WriteLine("unknown mode " + args[0]);
                    return 2;
            }
            Console.Out.Flush();
            Environment.Exit(0); // Mono's duplex client otherwise lingers after Close
            return 0;
        } catch (Exception e) {
            Console.WriteLine("FAILED " + e.GetType().Name + ": " + e.Message);
            Console.Out.Flush();
            Environment.Exit(1);
            return 1;
        }
    }
}
