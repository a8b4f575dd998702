// relay-gateway test peer: Mono's WCF web and SOAP-over-HTTP services on plain HTTP
// (System.ServiceModel.Web), standing behind `relay-gateway forward --listen --http` in
// tests/wcf_http.rs as WebHttpRelayBinding and BasicHttpRelayBinding services would, with no
// Microsoft.ServiceBus.dll. Built by tests/peers/install.sh into target/peers/MonoWeb.exe.
//
//   MonoWeb.exe PORT   WebHttpBinding on http://127.0.0.1:PORT/web/:
//                        GET  hello/{name}   "hello NAME" (with " x=X" for a query x)
//                        POST echo           "echo:TEXT", status 201 "made it"
//                      BasicHttpBinding on http://127.0.0.1:PORT/basic/:
//                        urn:relaytest/IBasic/Echo(s) -> "echo:" + s
//                      Prints "ready" when listening.
using System;
using System.Net;
using System.ServiceModel;
using System.ServiceModel.Web;

[ServiceContract]
public interface IWeb {
    [OperationContract, WebGet(UriTemplate = "hello/{name}")] string Hello(string name);
    [OperationContract, WebInvoke(Method = "POST", UriTemplate = "echo")] string Echo(string text);
}

public class Web : IWeb {
    public string Hello(string name) {
        var x = WebOperationContext.Current.IncomingRequest.UriTemplateMatch.QueryParameters["x"];
        return "hello " + name + (x != null ? " x=" + x : "");
    }
    public string Echo(string text) {
        var r = WebOperationContext.Current.OutgoingResponse;
        r.StatusCode = HttpStatusCode.Created;
        r.StatusDescription = "made it";
        return "echo:" + text;
    }
}

[ServiceContract(Namespace = "urn:relaytest")]
public interface IBasic {
    [OperationContract(Action = "urn:relaytest/IBasic/Echo", ReplyAction = "urn:relaytest/IBasic/EchoResponse")]
    string Echo(string s);
}

public class Basic : IBasic { public string Echo(string s) { return "echo:" + s; } }

static class Program {
    static int Main(string[] args) {
        var port = args[0];
        var web = new WebServiceHost(typeof(Web), new Uri("http://127.0.0.1:" + port + "/web/"));
        web.Open();
        var basic = new ServiceHost(typeof(Basic), new Uri("http://127.0.0.1:" + port + "/basic/"));
        basic.AddServiceEndpoint(typeof(IBasic), new BasicHttpBinding(), "");
        basic.Open();
        Console.WriteLine("ready");
        Console.Out.Flush();
        Console.In.ReadLine();
        System.Threading.Thread.Sleep(System.Threading.Timeout.Infinite);
        return 0;
    }
}
