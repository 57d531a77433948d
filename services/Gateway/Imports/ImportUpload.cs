using Crm.Contacts.V1;
using Google.Protobuf;
using Grpc.Core;

namespace Crm.Gateway.Imports;

/// <summary>
/// CSV imports over plain HTTP: <c>POST /v1/imports/{contacts|transactions}</c> with the file as the
/// body and the mapping (an ImportHeader in JSON) in the <c>crm-import-header</c> request header.
/// JSON transcoding cannot serve a client-streaming call, so the gateway streams the body into
/// Contacts' ImportContacts/ImportTransactions itself, 64 KiB a chunk: a 1 GB file never sits in
/// memory here either. The answer is the Import as JSON (its id also in <c>crm-import-id</c>; GET
/// /v1/imports/{id} follows a long one from elsewhere); errors are google.rpc.Status JSON, as for
/// every other REST call.
/// </summary>
public static class ImportUpload
{
    public const string HeaderName = "crm-import-header";
    /// <summary>Contacts' response header with the import's id (ContactsGrpcService.ImportIdHeader).</summary>
    public const string ImportIdHeader = "crm-import-id";
    private const int ChunkSize = 64 * 1024;

    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    public static async Task HandleAsync(HttpContext http, string kind, ContactsChannel contacts)
    {
        // The header is the JSON itself, percent-encoded when it holds non-ASCII text (Korean column
        // names): HTTP headers are ASCII.
        var json = Uri.UnescapeDataString(http.Request.Headers[HeaderName].ToString());
        if (json.Length == 0)
        {
            await GatewayErrors.WriteAsync(http, BadHeader("is required: the file's ImportHeader as JSON (file name, column mapping)"));
            return;
        }
        ImportHeader header;
        try
        {
            header = JsonParser.Default.Parse<ImportHeader>(json);
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or InvalidJsonException)
        {
            await GatewayErrors.WriteAsync(http, BadHeader(e.Message));
            return;
        }
        if (header.FileName.Length == 0) header.FileName = "upload.csv";
        // A file may be any size: it is streamed, never held.
        if (http.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
            limit.MaxRequestBodySize = null;

        var client = new ContactsService.ContactsServiceClient(contacts.Channel);
        var metadata = new Metadata();
        if (http.Request.Headers.Authorization.ToString() is { Length: > 0 } auth) metadata.Add("authorization", auth);
        using var call = string.Equals(kind, "contacts", StringComparison.OrdinalIgnoreCase)
            ? client.ImportContacts(metadata, cancellationToken: http.RequestAborted)
            : client.ImportTransactions(metadata, cancellationToken: http.RequestAborted);
        try
        {
            await call.RequestStream.WriteAsync(new ImportChunk { Header = header });
            var buffer = new byte[ChunkSize];
            int n;
            try
            {
                while ((n = await http.Request.Body.ReadAsync(buffer, http.RequestAborted)) > 0)
                    await call.RequestStream.WriteAsync(new ImportChunk { Data = ByteString.CopyFrom(buffer, 0, n) });
                await call.RequestStream.CompleteAsync();
            }
            catch (RpcException)
            {
                // Contacts ended the call early (a bad mapping, a refused token): its answer says why.
            }
            var import = await call.ResponseAsync;
            http.Response.Headers[ImportIdHeader] = import.ImportId;
            http.Response.ContentType = "application/json";
            await http.Response.WriteAsync(Json.Format(import), http.RequestAborted);
        }
        catch (RpcException e)
        {
            await GatewayErrors.WriteAsync(http, e.GetRpcStatus() ?? new Google.Rpc.Status { Code = (int)e.StatusCode, Message = e.Status.Detail });
        }
    }

    private static Google.Rpc.Status BadHeader(string problem)
    {
        var details = new Google.Rpc.BadRequest { FieldViolations = { new Google.Rpc.BadRequest.Types.FieldViolation { Field = HeaderName, Description = problem } } };
        return new Google.Rpc.Status { Code = (int)StatusCode.InvalidArgument, Message = $"{HeaderName}: {problem}", Details = { Google.Protobuf.WellKnownTypes.Any.Pack(details) } };
    }
}
