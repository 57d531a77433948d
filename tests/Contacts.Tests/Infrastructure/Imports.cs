using System.Text;
using Crm.Contacts.V1;
using Google.Protobuf;
using Grpc.Core;

namespace Crm.Contacts.Tests.Infrastructure;

public static class Imports
{
    /// <summary>The column mapping of the Online Retail II export (UK shop, GBP, cancellations start with 'C').</summary>
    public static TransactionColumns OnlineRetail => new()
    {
        OrderId = "Invoice", CustomerId = "Customer ID", OccurredAt = "InvoiceDate", DateFormat = "yyyy-MM-dd HH:mm:ss",
        TimeZone = "Europe/London", FixedCurrency = "GBP", Sku = "StockCode", Name = "Description",
        Quantity = "Quantity", UnitPrice = "Price", CancelledOrderPrefix = "C",
    };

    public static Task<Import> TransactionsAsync(ContactsService.ContactsServiceClient client, CallOptions options, string csv, TransactionColumns mapping) =>
        SendAsync(client.ImportTransactions(options), new ImportHeader { FileName = "test.csv", Transactions = mapping }, Encoding.UTF8.GetBytes(csv));

    public static Task<Import> ContactsAsync(ContactsService.ContactsServiceClient client, CallOptions options, string csv, ContactColumns mapping) =>
        SendAsync(client.ImportContacts(options), new ImportHeader { FileName = "contacts.csv", Contacts = mapping }, Encoding.UTF8.GetBytes(csv));

    /// <summary>Streams the file in small chunks (so records straddle chunk boundaries).</summary>
    public static async Task<Import> SendAsync(AsyncClientStreamingCall<ImportChunk, Import> call, ImportHeader header, byte[] data, int chunkSize = 1000)
    {
        using (call)
        {
            try
            {
                await call.RequestStream.WriteAsync(new ImportChunk { Header = header });
                for (var offset = 0; offset < data.Length; offset += chunkSize)
                    await call.RequestStream.WriteAsync(new ImportChunk { Data = ByteString.CopyFrom(data, offset, Math.Min(chunkSize, data.Length - offset)) });
                await call.RequestStream.CompleteAsync();
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException)
            {
                // The server ended the call early (e.g. a bad header) while chunks were still being
                // written: the write fails, often as Cancelled, and the server's own status is in the response.
            }
            return await call;
        }
    }
}
