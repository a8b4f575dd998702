// relay-gateway test peer on Mono's WCF (System.ServiceModel): NetTcpBinding with
// SecurityMode.None. Built by tests/peers/install.sh into target/peers/MonoPeer.exe.
//
//   host ECHO_PORT BLOB_PORT [PUBLIC_PORT]   echo service (ICalc) on net.tcp://127.0.0.1:ECHO_PORT/calc,
//                                            streamed blob service (IBlob) on net.tcp://127.0.0.1:BLOB_PORT/blob;
//                                            with PUBLIC_PORT the calc endpoint's logical address uses that port
//                                            (a host behind a relay). Prints "ready" when listening.
//   calc URI                                 Echo, Add, one-way Note, LastNote against URI; prints one line each
//   blob URI N                               Get(N) over TransferMode.Streamed; prints "blob N <checksum>"
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

static class Program {
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
